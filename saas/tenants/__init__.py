"""Tenants: the organisations that use Kakehashi, and how a request finds its tenant."""
