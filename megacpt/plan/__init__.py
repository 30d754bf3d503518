"""``megacpt plan``: check a layout, estimate its memory and FLOPs, rank alternatives, prove shapes.

Everything here runs on a CPU in seconds, before a job asks for its nodes.
"""
