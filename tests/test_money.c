/* test_money.c — unit tests for ISO 4217 currency validation.
 *
 * money.c keeps its codes in a sorted table searched with bsearch; a code inserted out of
 * order silently breaks lookups of its neighbours. So besides spot checks, every active code
 * is looked up from an independent list kept here. */
#include <criterion/criterion.h>

#include "funnel/money.h"

#include <string.h>

/* ISO 4217 list one, active alphabetic codes (2024), without funds and precious metals
 * (money.c leaves those out on purpose). Kept independently of money.c's table. */
static const char *const active_codes[] = {
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
};

Test(money_currency, common_codes_are_valid)
{
    static const char *const codes[] = {"EUR", "USD", "RUB", "GBP", "JPY", "CHF",
                                        "CNY", "KZT", "BYN", "TRY", "AED", "ZWG"};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        cr_assert(funnel_currency_valid(codes[i]), "%s must be valid", codes[i]);
}

Test(money_currency, every_active_code_is_found)
{
    /* Also proves the table is sorted: bsearch misses entries around a misplaced one. */
    for (size_t i = 0; i < sizeof active_codes / sizeof active_codes[0]; i++)
        cr_assert(funnel_currency_valid(active_codes[i]), "%s must be valid", active_codes[i]);
}

Test(money_currency, code_inside_a_longer_buffer_is_read_whole)
{
    /* The argument is a C string: the whole string must be a code, not just a prefix. */
    const char buf[] = "EURUSD";
    cr_assert_not(funnel_currency_valid(buf));
    cr_assert(funnel_currency_valid(buf + 3));
}

Test(money_currency, malformed_codes_are_refused)
{
    static const char *const bad[] = {
        "",       "E",   "EU",  "EURO", "EUR ", " EUR", "EUR\n", "usd",
        "Usd",    "uSD", "eur", "US$",  "123",  "978",  "E R",   "\xe2\x82\xac", /* the euro sign */
        "EU\x01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_not(funnel_currency_valid(bad[i]), "'%s' must be refused", bad[i]);
    cr_assert_not(funnel_currency_valid(NULL), "NULL must be refused, not dereferenced");
}

Test(money_currency, non_currencies_are_refused)
{
    /* Well-formed but not money anybody is paid in: test, no-currency, precious metals,
     * special drawing rights and funds are excluded on purpose (see money.c). */
    static const char *const bad[] = {"XXX", "XTS", "XAU", "XAG", "XPT", "XPD", "XDR", "XSU",
                                      "XUA", "XBA", "CLF", "BOV", "USN", "CHE", "CHW", "UYI"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_not(funnel_currency_valid(bad[i]), "%s must be refused", bad[i]);
}

Test(money_currency, withdrawn_and_invented_codes_are_refused)
{
    /* Withdrawn codes (HRK went to EUR in 2023; DEM, RUR, LTL long gone) and codes that
     * never existed, including ones sorting before the first and after the last entry. */
    static const char *const bad[] = {"HRK", "DEM", "FRF", "RUR", "LTL", "EEK",
                                      "AAA", "ABC", "AEC", "ZZZ", "ZWZ", "QQQ"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_not(funnel_currency_valid(bad[i]), "%s must be refused", bad[i]);
}
