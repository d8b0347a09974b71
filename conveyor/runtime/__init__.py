"""The connector runtime: finding plug-ins (``registry``), reading secrets (``secrets``), and the
drivers that run connectors — inbound polls and receives (``inbound``) — once for all connectors."""
