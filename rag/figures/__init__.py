"""Every figure in an answer looked for in the passages it was given: deterministic, exact where it applies, and able
to say where each figure stands (the source, its file and page, the line) or that it stands nowhere.

What counts as a figure: amounts (a currency sign, a scale word or both: "$81.8 billion", "RMB 3.5 million", "12亿"),
numbers written with thousands separators or decimals ("81,797", "0.35"), percentages ("38.3%", "12 percent"), dates
("July 1, 2023", "2023-07-01", "2023年7月1日") and years. Not figures: bare integers under 100 ("3 segments"), a
numbered list's markers ("107. Reliance on ..."), citation marks, form and item names ("10-Q", "Item 7"), file names.

When a figure is supported (docs/figures.md has every rule, and what they leave out):
- a passage holds the same value, to within half a unit of the last digit the answer wrote (rounding to the precision
  written: "$81.8 billion" is supported by "81,797" in a table "in millions", "$81.9 billion" is not);
- a passage's bare numbers count at face value and, where the passage says "in thousands", "in millions" or "in
  billions" (a table's header) or 单位：万元/亿元, at that scale too (not its years: "2023" is no $2.0 billion);
- signs are ignored: tables write a loss as "(1,234)", an answer as "a loss of $1,234 million";
- the passage's line holding it shares a word with the answer's sentence (the sources' company names do not count);
- a date matches the same day written any of the ways above; a year matches the year on a line about the same thing,
  unless the tables put its sentence's values under other years (a column's year binds its values, as does a
  sentence's list of periods the list of values it gives: "$2.8 billion and $2.7 billion as of December 31, 2022 and
  June 30, 2023");
- a period the answer names ("Q3 2023", "the quarter ended July 1, 2023", "as of September 24, 2022") is one a
  source's document reports on, as its metadata says: its own, the year-ago one its sentence compares with, or, for a
  balance, the fiscal year's start; a year then stands anywhere in the filing, as every column's header prints it;
  a quarter told as later than the one named before it ("and then ... in Q3 2023") must be later, and one compared
  against is not the one it is compared with; "the most recent quarter" is the sources' latest;
- an amount or percentage that is the change between two other figures of the answer (their difference, or the
  percentage change from the first to the second) is supported as derived from them.
The passages the answer cites ([n]) are searched first, then the others, and a value is shown on the line most about
its sentence among those that hold it. An unsupported figure says which rule found it so (``WHY``).

The modules, each using those before it: ``reading`` (what counts as a figure), ``words`` (what a text is about,
where its sentences and lines end), ``passages`` (a source as the check reads it), ``periods`` (the sources' periods
and those an answer names), ``report`` (what the check says), ``lookup`` (a figure looked up in the sources),
``period_checks`` (the rules for named periods) and ``check`` (all of it, for one answer).
"""

from rag.figures.check import check_figures, clear_caches
from rag.figures.reading import Figure, figures
from rag.figures.report import WHY, FigureCheck, FigureReport, Why

__all__ = ["WHY", "Figure", "FigureCheck", "FigureReport", "Why", "check_figures", "clear_caches", "figures"]
