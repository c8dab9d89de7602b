"""Signed status webhooks: receivers of an account's events, and their delivery.

The events themselves are written by whoever changes state, in the same transaction
(``core.outbox``). This package sends them: ``sweeper`` fans each event out to its receivers
and enqueues the sends that are due (in order per call), ``delivery`` is the RQ job that posts
one send (``signing`` signs it, ``http`` posts it without following redirects or reaching private
addresses, ``urls`` checks receivers' URLs), ``endpoints`` keeps the receivers and secrets.
"""
