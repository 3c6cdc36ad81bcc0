#!/usr/bin/env Rscript
# Independent reference values for commonlab-stats CR1 / CR2 / Bell-McCaffrey df,
# computed by clubSandwich (Pustejovsky's R package) on lm fits.
#
# Pinned: R 4.2.2, clubSandwich 0.5.8 (Debian bookworm: r-base-core 4.2.2.20221110-2,
#         r-cran-clubsandwich 0.5.8-1). Checked at run time.
# Run:    Rscript crates/stats/reference/cr2.R   (from the repository root)
# Writes: crates/stats/reference/cr2_clubsandwich.json (read by the Rust tests
#         in crates/stats/src/cr2_reference_tests.rs via include_str!; CI does not run R).
#
# Each case is a data set in the row format of `rows::analyze_rows` plus the
# model it implies:
#   value ~ 1 + period FE [+ cluster FE | stratum FE] [+ covariate] + treated
# fitted by lm(). The treatment coefficient is tested with
#   vcovCR(fit, cluster, type = "CR2")   + coef_test(test = "Satterthwaite")
#       -> se, Bell-McCaffrey df (working model: identity, lm's default), p
#   vcovCR(fit, cluster, type = "CR1S")  + coef_test(test = "naive-t")
#       -> Stata's factor G/(G-1)*(N-1)/(N-p) with G-1 df (= our CR1)
#   vcovCR(fit, cluster, type = "CR1")   -> G/(G-1) only (stored for the record)
# The Imbens-Kolesar df (Bell-McCaffrey df under an equicorrelated working
# model with the residual ICC, same CR2 variance) is not in clubSandwich; it is
# computed here from dense matrices (Imbens & Kolesar 2016, REStat 98(4), §4)
# and stored as `ik_df_dense`.
#
# Data are rounded (6 decimals) before fitting so that the JSON holds exactly
# the numbers R used; results are written with 17 significant digits.

stopifnot(R.version$major == "4", R.version$minor == "2.2")
suppressMessages(library(clubSandwich))
stopifnot(as.character(packageVersion("clubSandwich")) == "0.5.8")

RNGkind("Mersenne-Twister", "Inversion", "Rejection")
set.seed(20261126)

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
out_dir <- if (length(script)) dirname(normalizePath(script)) else "crates/stats/reference"

# ---------------------------------------------------------------- JSON writer
num <- function(x) {
  stopifnot(length(x) == 1, is.finite(x))
  s <- sprintf("%.17g", x)
  # shortest of 15/16/17 significant digits that round-trips
  for (d in 15:17) {
    t <- sprintf(paste0("%.", d, "g"), x)
    if (as.numeric(t) == x) { s <- t; break }
  }
  s
}
str_json <- function(x) paste0("\"", gsub("\"", "\\\\\"", x), "\"")
obj <- function(...) {
  kv <- list(...)
  kv <- kv[!vapply(kv, is.null, logical(1))]
  paste0("{", paste0(str_json(names(kv)), ":", unlist(kv), collapse = ","), "}")
}
arr <- function(v) paste0("[", paste0(v, collapse = ","), "]")
bool <- function(b) if (b) "true" else "false"

# ---------------------------------------------------------------- designs
# Stepped wedge: G communities cross over at staggered steps, T periods,
# m_ct users per cell drawn in [lo, hi] (1 row per cell when cell_rows).
sw_data <- function(G, T, lo, hi, cell_rows = FALSE, covariate = FALSE) {
  # crossover steps: spread over 1..T-1, randomly ordered; at least 2 distinct
  steps <- sort(1 + ((0:(G - 1)) * (T - 1)) %/% G)
  if (length(unique(steps)) < 2) steps[G] <- T - 1
  starts <- sample(steps)
  alpha <- rnorm(G, 0, 0.6)
  rows <- list()
  for (c in 1:G) for (t in 0:(T - 1)) {
    m <- if (cell_rows) 1 else sample(lo:hi, 1)
    cp <- rnorm(1, 0, 0.2)
    for (i in seq_len(m)) {
      d <- t >= starts[c]
      x <- rnorm(1)
      y <- alpha[c] + cp + 0.15 * t + 0.3 * d + (if (covariate) 0.6 * x else 0) +
        (if (cell_rows) rnorm(1, 0, 0.4) else rt(1, 5))
      rows[[length(rows) + 1]] <- data.frame(cluster = c, period = 2020 + t, treated = d,
                                             value = y, covariate = x, stratum = 0)
    }
  }
  do.call(rbind, rows)
}

# Parallel cluster design: G communities, k treated, n_c users in [lo, hi],
# over T periods (1 = cross-sectional); optional strata (blocked design) of
# paired communities with one treated per pair.
cluster_data <- function(G, k, lo, hi, T = 1, covariate = FALSE, blocked = FALSE) {
  if (blocked) {
    strata <- rep(seq_len(ceiling(G / 2)), each = 2)[1:G]
    tr <- integer(G)
    for (s in unique(strata)) {
      ix <- which(strata == s)
      tr[ix] <- if (length(ix) == 2) sample(c(0L, 1L)) else sample(c(0L, 1L, rbinom(1, 1, 0.5)))[seq_along(ix)]
    }
  } else {
    strata <- rep(0, G)
    tr <- sample(c(rep(1L, k), rep(0L, G - k)))
  }
  rows <- list()
  for (c in 1:G) {
    a <- rnorm(1, 0, 0.7) + 0.3 * strata[c]
    for (t in 0:(T - 1)) for (i in seq_len(sample(lo:hi, 1))) {
      x <- rnorm(1)
      y <- 1 + a + 0.1 * t + 0.4 * tr[c] + (if (covariate) 0.8 * x else 0) + rt(1, 4)
      rows[[length(rows) + 1]] <- data.frame(cluster = c, period = 2020 + t, treated = tr[c] == 1,
                                             value = y, covariate = x, stratum = strata[c])
    }
  }
  do.call(rbind, rows)
}

# ---------------------------------------------------------------- one case
ik_df <- function(X, e, cl, k) {
  # Imbens-Kolesar: BM df with Omega = (1-rho) I + rho blockdiag(11'), rho the
  # residual ICC truncated to [0, 0.99]; A_g from the identity model (CR2).
  n <- nrow(X)
  s2 <- sum(e^2) / n
  cross <- 0; pairs <- 0
  for (g in unique(cl)) {
    eg <- e[cl == g]
    cross <- cross + sum(eg)^2 - sum(eg^2)
    pairs <- pairs + length(eg) * (length(eg) - 1)
  }
  rho <- if (pairs == 0) 0 else min(max(cross / pairs / s2, 0), 0.99)
  M <- solve(crossprod(X))
  IH <- diag(n) - X %*% M %*% t(X)
  ek <- numeric(ncol(X)); ek[k] <- 1
  P <- NULL
  for (g in unique(cl)) {
    ix <- which(cl == g)
    ev <- eigen(IH[ix, ix, drop = FALSE], symmetric = TRUE)
    d <- ifelse(ev$values > 1e-10, 1 / sqrt(pmax(ev$values, 1e-10)), 0)
    A <- ev$vectors %*% diag(d, length(d)) %*% t(ev$vectors)
    P <- cbind(P, IH[, ix, drop = FALSE] %*% A %*% X[ix, , drop = FALSE] %*% M %*% ek)
  }
  Om <- (1 - rho) * diag(n) + rho * outer(cl, cl, "==")
  Gm <- t(P) %*% Om %*% P
  c(rho = rho, df = sum(diag(Gm))^2 / sum(Gm^2))
}

make_case <- function(name, kind, dat, cluster_fe = FALSE, covariate = FALSE) {
  dat$value <- round(dat$value, 6)
  dat$covariate <- round(dat$covariate, 6)
  dat$treated_num <- as.numeric(dat$treated)
  terms <- character(0)
  if (length(unique(dat$period)) > 1) terms <- c(terms, "factor(period)")
  if (cluster_fe) terms <- c(terms, "factor(cluster)")
  if (kind == "blocked") terms <- c(terms, "factor(stratum)")
  if (covariate) terms <- c(terms, "covariate")
  terms <- c(terms, "treated_num")
  fit <- lm(as.formula(paste("value ~", paste(terms, collapse = " + "))), data = dat)
  stopifnot(!any(is.na(coef(fit))))
  X <- model.matrix(fit)
  k <- which(colnames(X) == "treated_num")
  cl <- dat$cluster
  G <- length(unique(cl))
  v2 <- vcovCR(fit, cluster = cl, type = "CR2")
  t2 <- coef_test(fit, vcov = v2, test = "Satterthwaite", coefs = "treated_num")
  v1s <- vcovCR(fit, cluster = cl, type = "CR1S")
  t1s <- coef_test(fit, vcov = v1s, test = "naive-t", coefs = "treated_num")
  v1 <- vcovCR(fit, cluster = cl, type = "CR1")
  beta <- unname(coef(fit)[k])
  se2 <- sqrt(v2[k, k])
  stopifnot(abs(t2$SE - se2) < 1e-12 * se2, abs(t1s$SE - sqrt(v1s[k, k])) < 1e-12 * t1s$SE)
  ik <- ik_df(X, unname(residuals(fit)), cl, k)
  p_ik <- 2 * pt(abs(beta / se2), ik[["df"]], lower.tail = FALSE)
  # rows in the analyze_rows format
  row_json <- vapply(seq_len(nrow(dat)), function(i) {
    r <- dat[i, ]
    obj(cluster = str_json(sprintf("c%02d", r$cluster)), period = sprintf("%d", as.integer(r$period)),
        treated = bool(r$treated), value = num(r$value),
        covariate = if (covariate) num(r$covariate) else NULL,
        stratum = if (kind == "blocked") str_json(sprintf("s%d", as.integer(r$stratum))) else NULL)
  }, character(1))
  n_treated <- length(unique(cl[dat$treated]))
  obj(
    name = str_json(name),
    design = obj(kind = str_json(kind), cluster_fixed_effects = bool(cluster_fe)),
    model = str_json(paste(terms, collapse = " + ")),
    clusters = sprintf("%d", G), treated_clusters = sprintf("%d", n_treated),
    n = sprintf("%d", nrow(dat)), p = sprintf("%d", ncol(X)),
    rows = arr(row_json),
    beta = num(beta),
    cr2_se = num(se2), cr2_df = num(t2$df_Satt), cr2_p = num(t2$p_Satt),
    cr1s_se = num(sqrt(v1s[k, k])), cr1s_df = sprintf("%d", G - 1), cr1s_p = num(t1s$p_t),
    cr1_se = num(sqrt(v1[k, k])),
    residual_icc = num(ik[["rho"]]), ik_df_dense = num(ik[["df"]]), ik_p_dense = num(p_ik)
  )
}

# ---------------------------------------------------------------- cases
cases <- character(0)
add <- function(...) cases[[length(cases) + 1]] <<- make_case(...)

# Stepped wedges, 3-6 communities, period FE, with / without cluster FE and covariate.
i <- 0
for (G in 3:6) for (variant in 1:5) {
  i <- i + 1
  T <- G + 1 + (variant %% 2)
  cfe <- variant %in% c(2, 4)
  cov <- variant %in% c(3, 4)
  cell <- variant == 5
  dat <- sw_data(G, T, 1, 3 + variant, cell_rows = cell, covariate = cov)
  add(sprintf("sw_%02d_G%d_T%d%s%s%s", i, G, T, if (cfe) "_clusterfe" else "",
              if (cov) "_covariate" else "", if (cell) "_cellrows" else ""),
      "stepped_wedge", dat, cluster_fe = cfe, covariate = cov)
}
# Parallel cluster designs, 3-8 communities, unbalanced sizes, 1 or 3 periods.
i <- 0
for (G in 3:8) for (variant in 1:4) {
  i <- i + 1
  k <- if (G == 3) 1 + (variant %% 2) else 2 + (variant %% (G - 3))
  cov <- variant %in% c(2, 4)
  T <- if (variant >= 3) 3 else 1
  lo <- 1 + (variant %% 2); hi <- lo + 2 + 3 * variant
  dat <- cluster_data(G, k, lo, hi, T = T, covariate = cov)
  add(sprintf("cluster_%02d_G%d_k%d_T%d%s", i, G, k, T, if (cov) "_covariate" else ""),
      "cluster", dat, covariate = cov)
}
# Blocked (paired communities, stratum FE), 4-8 communities.
i <- 0
for (G in 4:8) for (variant in 1:2) {
  i <- i + 1
  cov <- variant == 2
  dat <- cluster_data(G, 0, 2, 6 + G, T = variant, covariate = cov, blocked = TRUE)
  add(sprintf("blocked_%02d_G%d_T%d%s", i, G, variant, if (cov) "_covariate" else ""),
      "blocked", dat, covariate = cov)
}

versions <- obj(R = str_json(paste(R.version$major, R.version$minor, sep = ".")),
                clubSandwich = str_json(as.character(packageVersion("clubSandwich"))))
out <- paste0(obj(
  generator = str_json("reference/cr2.R"),
  versions = versions,
  source = str_json("clubSandwich::vcovCR(lm, type = CR2 | CR1S | CR1) + coef_test(Satterthwaite | naive-t); IK df from dense matrices"),
  cases = paste0("[\n", paste0(cases, collapse = ",\n"), "\n]")
), "\n")
writeLines(out, file.path(out_dir, "cr2_clubsandwich.json"), sep = "")
cat("wrote", length(cases), "cases to", file.path(out_dir, "cr2_clubsandwich.json"), "\n")
