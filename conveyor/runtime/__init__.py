"""The connector runtime: finding plug-ins (``registry``), reading secrets (``secrets``), the HTTP
stack every HTTP connector shares (``http``), the drivers that run connectors — inbound polls and
receives (``inbound``) — once for all connectors, and what ``conveyor systems`` reports about them
(``systems``)."""
