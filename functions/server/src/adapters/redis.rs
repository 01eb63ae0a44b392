//! Redis (ElastiCache) adapter of the cache port.
