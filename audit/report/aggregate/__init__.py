"""The aggregate report (``audit aggregate``): several study folders, one task each (a data set
and a teacher -> student pair), read together: one verdict per method across the tasks, rliable's
aggregate metrics and performance profiles, and the cross-architecture matrix.

- ``tasks``: the folders as tasks, and the check that they share one budget;
- ``sections``: the report's sections; ``figures``: its rliable-style figures;
- ``write``: ``write_aggregate``, which writes index.html, report.md, tables/ and figures/.

Like the study report it never imports torch.
"""
