"""``batchml dashboard``: a small web app over the queue (see :mod:`batchml.web.app`)."""
