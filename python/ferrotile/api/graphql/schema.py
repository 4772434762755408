"""The GraphQL schema (field names in camelCase, as strawberry writes them by default)."""

from __future__ import annotations

import strawberry

from ferrotile.api.graphql.mutations import Mutation
from ferrotile.api.graphql.queries import Query
from ferrotile.api.graphql.subscription import Subscription

schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)
