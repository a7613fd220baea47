"""Request and reply models of the admin catalogue API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, field_validator

from runtime.api import BodyModel, DateTimeStr, QueryModel, ReplyModel, UuidStr

MovieStatus = Literal["draft", "processing", "published", "unpublished", "taken_down", "archived"]

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)]
Year = Annotated[int, Field(ge=1888, le=2100)]
MinAge = Annotated[int, Field(ge=0, le=21, description="Viewers younger than this are refused")]
Rating = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=16)]
Country = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z]{2}$"),
    AfterValidator(str.upper),
]
Countries = Annotated[list[Country], Field(max_length=250)]
Slug = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$"),
    Field(description="Lower-case letters, digits and dashes (1-64)"),
]
Slugs = Annotated[list[Slug], Field(max_length=20)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
CategoryName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
]


class NewMovie(BodyModel):
    """A film: created as a `draft`, published once a video was ingested."""

    title: Title
    description: Description = ""
    year: Year | None = None
    categories: Slugs = Field(default_factory=list, description="Slugs of existing categories")
    min_age: MinAge = 0
    rating: Rating = "G"
    geo_allow: Countries | None = Field(
        default=None, description="Only these ISO countries may play it (null: everywhere)"
    )
    geo_block: Countries = Field(default_factory=list, description="These countries may not")


#: fields of an edit that may be null (null clears them)
NULLABLE = frozenset({"year", "geo_allow"})


class MovieChange(BodyModel):
    """An edit: only the fields present change (`year` and `geo_allow` may be null)."""

    title: Title | None = None
    description: Description | None = None
    year: Year | None = None
    categories: Slugs | None = Field(default=None, description="Replaces the film's categories")
    min_age: MinAge | None = None
    rating: Rating | None = None
    geo_allow: Countries | None = Field(default=None, description="null: everywhere")
    geo_block: Countries | None = None

    @field_validator("title", "description", "categories", "min_age", "rating", "geo_block")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null")
        return value


class MoviesQuery(QueryModel):
    """Filter and page the films, newest first."""

    status: MovieStatus | None = None
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = Field(
        default="", description="Words of the title or description, or the slug"
    )
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page")
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class Unpublish(BodyModel):
    """Why the film goes off the catalogue (optional, kept in the audit log)."""

    reason: Reason | None = None


class Takedown(BodyModel):
    """Why the film is taken down (kept on the film and in the audit log)."""

    reason: Reason


class NewCategory(BodyModel):
    """A category."""

    slug: Slug
    name: CategoryName


class CategoryChange(BodyModel):
    """A new name (the slug stays: campaigns target categories by slug)."""

    name: CategoryName


class AdminMovie(ReplyModel):
    """A film, whatever its status."""

    id: UuidStr
    slug: str
    title: str
    description: str
    year: int | None
    duration_s: float
    min_age: int
    rating: str
    geo_allow: list[str] | None
    geo_block: list[str]
    status: MovieStatus
    version: int = Field(description="Bumped by every ingest")
    categories: list[str]
    renditions: list[str] = Field(description="Ingested renditions (empty: not playable)")
    poster_url: str | None
    created_at: DateTimeStr
    updated_at: DateTimeStr
    published_at: DateTimeStr | None
    taken_down_at: DateTimeStr | None
    takedown_reason: str | None


class AdminMoviePage(ReplyModel):
    """A page of films."""

    items: list[AdminMovie]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


class AdminCategory(ReplyModel):
    """A category and its films."""

    slug: str
    name: str
    films: int
    published_films: int


class AdminCategoryList(ReplyModel):
    """Every category, by name."""

    items: list[AdminCategory]
