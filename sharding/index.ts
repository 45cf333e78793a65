// Public surface of sharding/ (see README.md beside this file). Nothing is implemented here yet.
export {}
