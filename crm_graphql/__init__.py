"""crm_graphql: a GraphQL API for lead management with an AI-assisted qualification step."""
