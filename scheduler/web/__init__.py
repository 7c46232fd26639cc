"""Server-rendered pages for citizens, hotline agents and staff (Jinja2, no JavaScript needed)."""
