"""gunicorn settings shared by `make run` (scripts/run) and the Docker image (`--config`)."""

# The access log names the path, never the query string (%(U)s, not %(r)s or %(q)s): the
# account search takes a full phone number (?q=+1415...), and so does the login page's
# ?next=... after a redirect. The referer (%(f)s) is left out for the same reason: it is the
# URL of the previous page, query string included.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s"'

# A connection serves one request, then closes (`Connection: close`). Keeping it open for a
# next request (gunicorn's default, 2 s) cost each request about 0.3 ms more of the web
# process's CPU (25% of a hello-world's) in re-arming and then closing it, for callers that
# never sent one: a reverse proxy (nginx talks HTTP/1.0 to its upstream by default) or
# Twilio's webhooks, each a student's text. A load balancer that reuses upstream connections
# then opens one per request instead, and never races gunicorn closing an idle one (the 502s
# of a balancer whose idle timeout outlasts the server's). `--keep-alive N` still wins.
keepalive = 0

# A process takes no more connections than its threads can serve, and a couple more.
# gunicorn's default (1000) let one process accept most of a class burst and queue it behind
# its own few threads while the other processes idled: the slowest webhooks of a burst took
# twice as long. Connections beyond that wait in the listen backlog for whichever process
# frees a thread first. An explicit --worker-connections still wins.
KEEPALIVE_SLOTS = 2


def limit_connections(server):
    """Set worker_connections to threads + KEEPALIVE_SLOTS unless it was given.

    Before any worker exists (on_starting, and on_reload after a HUP re-read the settings): a
    gunicorn worker reads the setting when it is made, and the arbiter makes it before its
    pre_fork hook runs, so a limit set there missed the first process, which took whole bursts.
    """
    setting = server.cfg.settings["worker_connections"]
    if setting.value == setting.default:
        server.cfg.set("worker_connections", server.cfg.threads + KEEPALIVE_SLOTS)


on_starting = limit_connections
on_reload = limit_connections


def post_worker_init(worker):
    from registrations import cpu_priority, warmup

    # A session of its own, to weigh as much as a database connection does on a shared machine.
    cpu_priority.web_worker_session(worker.ppid)
    # Start every request thread with its database connection open (registrations/warmup.py),
    # not as a burst's requests queue up. Only gthread workers have a pool (sync: one thread).
    pool = getattr(worker, "tpool", None)
    if pool is not None:
        warmup.web_threads(pool, worker.cfg.threads)
    # Last, with everything the process keeps loaded: out of every full collection to come.
    warmup.freeze_heap()
