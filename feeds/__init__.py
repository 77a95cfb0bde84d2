"""The steps the exchange DAGs run (outbound, snapshot, inbound, checkpoint, audit, the overview's figures) and
``feeds.tasks``, what the DAG file calls. They pass references and counts, never records."""
