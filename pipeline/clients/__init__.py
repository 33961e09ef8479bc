"""HTTP clients of the two vendors: one requests.Session each, explicit timeouts, typed errors."""
