"""Reading the anime site: the HTTP client, page parsers and hoster resolvers."""
