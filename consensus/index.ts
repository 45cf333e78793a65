// Public surface of consensus/ (see README.md beside this file). Nothing is implemented here yet.
export {}
