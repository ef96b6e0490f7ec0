"""Test helpers: real servers started per session, and waiting with deadlines.

Import them as ``tests.support.<module>`` (pytest.ini puts the repo root on
sys.path).
"""
