"""The reproducibility report of a study folder, one module per concern:

- ``write``: ``write_report``, which assembles the sections and writes index.html, report.md,
  tables/*.csv and figures/*.png;
- ``document`` (Table, Section, Block, FigureBlock) and ``render`` (Markdown, the HTML template
  in ``templates/``);
- ``sections/``: one module per section, in the page's order;
- the numbers the sections share: ``runs`` (each method's finished runs), ``summary`` (mean, std
  and gains over the references, also behind summary.csv), ``importance`` (fANOVA),
  ``claimed`` (gains the claims registry states), ``format`` (how numbers are shown),
  ``settings`` (margin, alpha, p-value correction);
- ``figures`` (matplotlib) and ``machine`` (software and hardware, recorded as machine.json).

Nothing here imports torch.
"""
