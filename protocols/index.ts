// Public surface of protocols/ (see README.md beside this file). Nothing is implemented here yet.
export {}
