"""What every tpskit page shares, the district's dashboard and the kit's review screen alike: serving a
Starlette app on a thread (loopback by default), server-sent events, security headers, and the committed
stylesheet and script (no CDN: a page loads nothing from the internet)."""
