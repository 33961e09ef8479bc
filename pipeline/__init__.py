"""rokt-sfmc: the Rokt Calendar <-> Salesforce Marketing Cloud integration backend."""
