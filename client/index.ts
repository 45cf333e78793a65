// Public surface of client/ (see README.md beside this file). Nothing is implemented here yet.
export {}
