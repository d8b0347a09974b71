"""Delivery: move accepted messages from the ledger's outbox to their targets, exactly once each.

``worker`` runs the delivery loop (claim in the ledger, map outbound, ``connector.send``, record),
``relay`` publishes outbox rows to a broker transport, ``retry`` computes backoff, ``ordering``
keeps related messages in acceptance order, ``notes`` turns what a target said alongside a
posting into the lines stored on the delivery, ``replay`` re-queues parked deliveries and ``status``
answers what is queued, in flight, retrying and parked per target.
"""
