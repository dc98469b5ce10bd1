"""Faust agents: consume -> validate -> decide -> send, one flow per module."""
