"""Collectors: everything that brings data in.

Log readers, the endpoint probe, the provider emulator, the scheduler.
"""
