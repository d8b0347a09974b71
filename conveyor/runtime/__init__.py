"""The connector runtime: finding plug-ins (``registry``), reading secrets (``secrets``), the HTTP
stack every HTTP connector shares (``http``), and the drivers that run connectors — inbound polls
and receives (``inbound``) — once for all connectors."""
