"""The renders app: enqueue a clip, watch its status, play it."""
