"""Who may connect and how much a client may make the server do: tokens (static and JWT,
verified into a grant), the guard (the one token check, the abuse counters), where a request's
token is, the per-address count. Event loop; pure but for the guard's counters.
"""
