"""Transports as Airflow hooks: SOAP (zeep), REST, SFTP (paramiko)."""
