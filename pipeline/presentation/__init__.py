"""Presentation: replay outputs as tables (report), PNG figures (png) and interactive HTML (html)."""
