//! AWS adapters (Secrets Manager, DynamoDB, S3, SQS), chosen by configuration;
//! the local adapters stay the default.
