"""The gevent worker: composed of small loops, each in its own module.

Nothing here patches: bin/geoq-worker calls gevent.monkey.patch_all() before
importing this package.
"""
