module {{name_ident}}

go 1.23
