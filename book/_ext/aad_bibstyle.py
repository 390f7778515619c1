"""Author-year bibliography for the book (a small local Sphinx extension).

sphinxcontrib-bibtex cites in the text by author and year (``bibtex_reference_style``), but
its list styles (``plain``, ``alpha``, ...) label and order the list like a numbered one.
This extension registers

* ``authoryear``, a pybtex formatting style for the list: sorted by first author, then year, each
  entry written as ``Coelho, G., Pereira, P., ... and Pilastri, A. (2021). Title. Venue.
  https://doi.org/...``, its label ``Coelho et al., 2021`` (hidden by the book's CSS, kept
  as the target of the citations);
* ``author_year_suffixed``, the referencing style ``author_year`` whose year carries the
  list's letter when one author group has several works in a year (``Koizumi et al.,
  2020a``), so that the text and the list agree.

Both are selected in ``_config.yml`` (``bibtex_default_style``, ``bibtex_reference_style``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from dataclasses import field as dataclass_field

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style import FormattedEntry
from pybtex.style.formatting import toplevel
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.formatting.unsrt import pages
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import SortingStyle as AuthorYearTitleSorting
from pybtex.style.template import (
    field,
    first_of,
    href,
    join,
    node,
    optional,
    optional_field,
    sentence,
    tag,
    words,
)
from sphinxcontrib.bibtex.plugin import register_plugin as register_bibtex_plugin
from sphinxcontrib.bibtex.style.referencing import BracketStyle, GroupReferenceStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle
from sphinxcontrib.bibtex.style.referencing.basic_author_year import (
    BasicAuthorYearParentheticalReferenceStyle,
    BasicAuthorYearTextualReferenceStyle,
)
from sphinxcontrib.bibtex.style.referencing.extra_author import ExtraAuthorReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_empty import ExtraEmptyReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_label import ExtraLabelReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_year import ExtraYearReferenceStyle
from sphinxcontrib.bibtex.style.template import join2, post_text, pre_text, reference

#: The year at the end of a label, with its disambiguating letter: "..., 2020b".
_LABEL_YEAR = re.compile(r",\s*(\d{4}[a-z]?|n\.d\.[a-z]?)$")


def _plain(latex: str) -> str:
    """A LaTeX name part (``Andr{\\'e}``) as plain text (``André``)."""
    return Text.from_latex(latex).render_as("text")


def _year_of_label(label: str) -> str | None:
    match = _LABEL_YEAR.search(label or "")
    return match.group(1) if match else None


@node
def label_year(children, data):
    """The entry's year as its label shows it (with the letter, if any)."""
    assert not children
    entry = data.get("formatted_entry")  # in-text references
    label = entry.label if entry is not None else data.get("label")  # the list
    year = _year_of_label(label)
    if year is not None:
        return Text(year)
    return first_of[optional[field("year")], "n.d."].format_data(data)


@node
def person_names(children, data, role="author"):
    """``Last, F. M.`` for each person, ``and`` before the last, ``et al.`` for "others"."""
    assert not children
    persons = data["entry"].persons.get(role, [])
    style = data["style"]
    others = bool(persons) and str(persons[-1]).strip().lower() == "others"
    if others:
        persons = persons[:-1]
    formatted = [style.format_name(person, style.abbreviate_names) for person in persons]
    if others:
        return join(sep=", ")[formatted].format_data(data) + Text(", et al.")
    return join(sep=", ", sep2=" and ", last_sep=", and ")[formatted].format_data(data)


class AuthorYearLabelStyle(BaseLabelStyle):
    """``Coelho et al., 2021``; ``Ioffe and Szegedy, 2015``; letters for equal labels."""

    def format_labels(self, sorted_entries):
        labels = [self.format_label(entry) for entry in sorted_entries]
        count = Counter(labels)
        seen: Counter = Counter()
        for label in labels:
            if count[label] == 1:
                yield label
            else:
                yield label + chr(ord("a") + seen[label])
                seen[label] += 1

    def format_label(self, entry) -> str:
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        last = [_plain(" ".join(p.prelast_names + p.last_names)) for p in persons]
        if not last:
            who = _plain(entry.fields.get("title", entry.key))
        elif len(last) == 1:
            who = last[0]
        elif len(last) == 2 and last[1].lower() != "others":
            who = f"{last[0]} and {last[1]}"
        else:
            who = f"{last[0]} et al."
        return f"{who}, {entry.fields.get('year', 'n.d.')}"


class FirstAuthorYearSorting(AuthorYearTitleSorting):
    """By first author, then year, then the other authors and the title: the order in which
    a reader looks up "Dohi et al., 2022" (APA would order by the whole author list)."""

    def sorting_key(self, entry):
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        first = self.person_key(persons[0]) if persons else ""
        rest = self.persons_key(persons[1:])
        return (first, entry.fields.get("year", ""), rest, entry.fields.get("title", ""))


class AuthorYearStyle(UnsrtStyle):
    """The list entry: authors (year). Title. Venue. DOI or URL."""

    default_name_style = "lastfirst"
    default_label_style = "aad_authoryear"
    default_sorting_style = "aad_first_author_year"

    def __init__(self, **kwargs):
        kwargs.setdefault("abbreviate_names", True)
        super().__init__(**kwargs)

    def format_entry(self, label, entry, bib_data=None):
        context = {"entry": entry, "style": self, "bib_data": bib_data, "label": label}
        get_template = getattr(self, f"get_{entry.type}_template", self.get_misc_template)
        return FormattedEntry(entry.key, get_template(entry).format_data(context), label)

    # -- parts ---------------------------------------------------------------------------

    def head(self):
        """``Coelho, G., ... and Pilastri, A. (2021).``"""
        return words[
            first_of[optional[person_names(role="author")], optional[person_names(role="editor")]],
            join["(", label_year, ")."],
        ]

    def title(self, italic: bool = False):
        text = field("title")
        return sentence[tag("em")[text] if italic else text]

    def web(self):
        """The DOI as a link, else the URL."""
        doi = join["https://doi.org/", field("doi", raw=True)]
        url = field("url", raw=True)
        return first_of[optional[href(doi)[doi]], optional[href(url)[url]]]

    def in_venue(self):
        return sentence[
            words["In", tag("em")[field("booktitle")]],
            optional[words[field("series"), field("volume")]],
            optional[join["pp. ", pages]],
        ]

    # -- entry types ---------------------------------------------------------------------

    def get_article_template(self, e):
        volume = optional[join[field("volume"), optional["(", field("number"), ")"]]]
        return toplevel[
            self.head(),
            self.title(),
            sentence[tag("em")[field("journal")], volume, optional[pages]],
            self.web(),
        ]

    def get_inproceedings_template(self, e):
        return toplevel[
            self.head(),
            self.title(),
            self.in_venue(),
            optional[sentence[field("publisher")]],
            self.web(),
        ]

    get_incollection_template = get_inproceedings_template

    def get_book_template(self, e):
        return toplevel[
            self.head(),
            self.title(italic=True),
            sentence[field("publisher"), optional_field("address")],
            self.web(),
        ]

    def get_techreport_template(self, e):
        return toplevel[
            self.head(),
            self.title(italic=True),
            sentence[first_of[optional_field("type"), "Technical report"], field("institution")],
            self.web(),
        ]

    def get_misc_template(self, e):
        return toplevel[
            self.head(),
            self.title(italic=True),
            optional[sentence[field("howpublished")]],
            self.web(),
        ]


# -- in-text references whose year is the list's (with its letter) ------------------------


@dataclass
class _Parenthetical(BasicAuthorYearParentheticalReferenceStyle):
    def inner(self, role_name):
        return join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
            pre_text,
            reference[
                join(sep=self.author_year_sep)[
                    self.person.author_or_editor_or_title(full="s" in role_name),
                    label_year,
                ]
            ],
            post_text,
        ]


@dataclass
class _Textual(BasicAuthorYearTextualReferenceStyle):
    def inner(self, role_name):
        return join(sep=self.text_reference_sep)[
            self.person.author_or_editor_or_title(full="s" in role_name),
            join[
                self.bracket.left,
                join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
                    pre_text,
                    reference[label_year],
                    post_text,
                ],
                self.bracket.right,
            ],
        ]


@dataclass
class _Year(ExtraYearReferenceStyle):
    def inner(self, role_name):
        return reference[label_year]


def _round_brackets() -> BracketStyle:
    return BracketStyle(left="(", right=")", sep="; ")


@dataclass
class SuffixedAuthorYearReferenceStyle(AuthorYearReferenceStyle):
    """``author_year`` with the list's year letters, in round brackets as author-year
    citations usually are: (Coelho et al., 2021; Koizumi et al., 2020a), Coelho et al. (2021).
    """

    bracket_textual: BracketStyle = dataclass_field(default_factory=_round_brackets)
    bracket_parenthetical: BracketStyle = dataclass_field(default_factory=_round_brackets)
    bracket_author: BracketStyle = dataclass_field(default_factory=_round_brackets)
    bracket_label: BracketStyle = dataclass_field(default_factory=_round_brackets)
    bracket_year: BracketStyle = dataclass_field(default_factory=_round_brackets)

    def __post_init__(self):
        self.styles.extend(
            [
                _Parenthetical(
                    bracket=self.bracket_parenthetical,
                    person=self.person,
                    author_year_sep=self.author_year_sep,
                    pre_text_sep=self.pre_text_sep,
                    post_text_sep=self.post_text_sep,
                ),
                _Textual(
                    bracket=self.bracket_textual,
                    person=self.person,
                    text_reference_sep=self.text_reference_sep,
                    pre_text_sep=self.pre_text_sep,
                    post_text_sep=self.post_text_sep,
                ),
                ExtraAuthorReferenceStyle(bracket=self.bracket_author, person=self.person),
                ExtraLabelReferenceStyle(bracket=self.bracket_label),
                _Year(bracket=self.bracket_year),
                ExtraEmptyReferenceStyle(),
            ]
        )
        GroupReferenceStyle.__post_init__(self)


def register() -> None:
    """Make the styles known to pybtex and sphinxcontrib-bibtex by name (idempotent)."""
    register_plugin("pybtex.style.labels", "aad_authoryear", AuthorYearLabelStyle)
    register_plugin("pybtex.style.sorting", "aad_first_author_year", FirstAuthorYearSorting)
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    register_bibtex_plugin(
        "sphinxcontrib.bibtex.style.referencing",
        "author_year_suffixed",
        SuffixedAuthorYearReferenceStyle,
    )


register()  # on import, so that the styles also work outside Sphinx (the tests)


def setup(app):
    register()
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
