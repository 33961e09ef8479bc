"""Writes leaving for SFMC in batches, and the retry table every vendor call follows."""
