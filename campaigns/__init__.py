"""Campaigns: a CSV of numbers becomes one queued call per number, dialed from SQL."""
