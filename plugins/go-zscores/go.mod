module zscores

go 1.23
