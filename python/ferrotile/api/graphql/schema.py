"""The GraphQL schema (field names in camelCase, as strawberry writes them by default), with the
cost limits and quiet client-error logging of :mod:`.limits`."""

from __future__ import annotations

from ferrotile.api.graphql.limits import LimitedSchema
from ferrotile.api.graphql.mutations import Mutation
from ferrotile.api.graphql.queries import Query
from ferrotile.api.graphql.subscription import Subscription

schema = LimitedSchema(query=Query, mutation=Mutation, subscription=Subscription)
