"""Datasets as ImageStores: readers by format (``sources``), named datasets (``datasets``, one module each),
loading by name or path through the cache (``registry``, ``cache``)."""
