"""The hub's input: the feed protocol and its batches (each says its kind), the pump, and the
one-process feed (a source in a producer thread, bridged into the loop).
"""
