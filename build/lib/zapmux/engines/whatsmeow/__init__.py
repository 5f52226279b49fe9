"""The whatsmeow engine (neonize): ``client`` runs in the server, ``worker`` in its own
process per tenant. Only the worker side (``worker``, ``mapping``, ``sending``) imports
neonize; nothing here does.
"""
