"""Reviewing pairs by eye: a local web page to accept or reject each pair, decisions kept in SQLite.

:mod:`~sempairs.review.session` reads a pair file against its dataset and opens its decision
store, :mod:`~sempairs.review.store` keeps the decisions (one durable SQLite transaction each),
:mod:`~sempairs.review.queue` orders and filters the pairs shown, :mod:`~sempairs.review.stats`
turns decisions into a precision estimate with Wilson intervals, :mod:`~sempairs.review.export`
writes the kept pairs as a pair file, :mod:`~sempairs.review.images` renders dataset images for the
page and :mod:`~sempairs.review.app` / :mod:`~sempairs.review.server` serve it.
"""
