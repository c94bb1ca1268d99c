"""What a person or a probe asks of the monitor, on one session: ingest, the deployment registry,
alert actions and incidents, and the request and response schemas."""
