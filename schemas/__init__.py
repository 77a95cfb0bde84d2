"""Data, not code: agreements, agencies, dataset JSON Schemas, XSD, WSDL and OpenAPI, shipped with the package and
read through ``lienthong.settings.schema_file`` (``importlib.resources``), never by a path into the source tree."""
