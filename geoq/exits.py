"""Every exit status geoq's two programs return. Scripts and service managers rely on these values: never renumber.

The two programs share the numbers 0 to 3 but give 1, 2 and 3 their own meanings:
each meaning has its own name, so a call site says which one it means.

`bin/geoq-worker` (one worker, or the parent of `--processes N`; README "Concepts" and "The delivery promise"):

    EXIT_OK           0  stopped after SIGTERM / SIGINT; every job it took finished or was handed back
                         (the parent: every child stopped cleanly)
    EXIT_UNCLEAN      1  a loop of the worker failed (a bug in geoq): it stopped as after SIGTERM, its jobs
                         finished or handed back, for its service manager to start it again; the parent:
                         a child did not stop cleanly (killed, crashed while stopping, or exited 1)
    EXIT_CONFIG       2  bad config, arguments or credentials, said in one line (the parent: a child
                         exited 2, and the others were stopped)
    EXIT_LEFT         3  stopped, but Redis had not taken every outcome and handback by the stop's
                         deadline: jobs are left in the worker's processing lists (it stays registered)
                         for another worker's reaper to return; nothing is lost

    The parent of several children returns the most serious of their statuses: 2, then 1, then 3.

`bin/geoq`, the admin CLI (DESIGN.md section 7, README "Admin CLI"):

    EXIT_OK           0  done
    EXIT_NOT_FOUND    1  what was asked for does not exist (also: Redis refused the command, or a
                         failure nobody planned for)
    EXIT_USAGE        2  usage or config error, authentication, ACL and certificate failures included
    EXIT_UNREACHABLE  3  Redis unreachable: refused, unknown host, timeout

Pure: no I/O and no imports, so both programs (and geoq.admin.errors) may import it first.
"""

from __future__ import annotations

__all__ = ["EXIT_CONFIG", "EXIT_LEFT", "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_UNCLEAN", "EXIT_UNREACHABLE",
           "EXIT_USAGE"]

EXIT_OK = 0

# geoq-worker
EXIT_UNCLEAN = 1
EXIT_CONFIG = 2
EXIT_LEFT = 3

# geoq (admin CLI)
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
