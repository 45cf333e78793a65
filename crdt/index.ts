// Public surface of crdt/ (see README.md beside this file). Nothing is implemented here yet.
export {}
