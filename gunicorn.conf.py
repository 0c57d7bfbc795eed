"""gunicorn settings shared by `make run` (scripts/run) and the Docker image (`--config`)."""

# The access log names the path, never the query string (%(U)s, not %(r)s or %(q)s): the
# account search takes a full phone number (?q=+1415...), and so does the login page's
# ?next=... after a redirect. The referer (%(f)s) is left out for the same reason: it is the
# URL of the previous page, query string included.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s"'
