"""What clients see: the client protocol (query, control messages, replies, close codes), the
unmasked WebSocket frames built once, and the hub's encoder. Pure.
"""
