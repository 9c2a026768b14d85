"""Seeing what the batch is doing: queue status, Prometheus metrics, and SVG charts.

``status``   one snapshot of a queue (counts, workers, lineage head, throughput, dead items),
             shared by ``batchml queue status`` and the dashboard's JSON endpoints
``console``  the Rich rendering of a snapshot for ``queue status``
``metrics``  a worker observer exporting Prometheus metrics, and the ``/metrics`` server
``charts``   small deterministic SVG charts for the HTML report and the dashboard
"""
