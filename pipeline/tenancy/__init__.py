"""Who is served: the tenant registry, API keys, and each process's per-tenant handles."""
