using System.Globalization;

namespace Crm.Contacts.Features.Transactions;

/// <summary>
/// Amounts for people: rounded to the currency's minor units (ISO 4217) with grouped thousands, so
/// 1016000.0000 KRW reads "1,016,000 KRW" and 38700.4 GBP "38,700.40 GBP". The exact decimal stays in
/// the API's <c>total</c>; this is its <c>formatted</c> companion.
/// </summary>
public static class Money
{
    /// <summary>Currencies whose minor unit is not the usual hundredth (ISO 4217 list 1).</summary>
    private static readonly Dictionary<string, int> MinorUnits = new(StringComparer.Ordinal)
    {
        ["BIF"] = 0, ["CLP"] = 0, ["DJF"] = 0, ["GNF"] = 0, ["ISK"] = 0, ["JPY"] = 0, ["KMF"] = 0, ["KRW"] = 0,
        ["PYG"] = 0, ["RWF"] = 0, ["UGX"] = 0, ["UYI"] = 0, ["VND"] = 0, ["VUV"] = 0, ["XAF"] = 0, ["XOF"] = 0, ["XPF"] = 0,
        ["BHD"] = 3, ["IQD"] = 3, ["JOD"] = 3, ["KWD"] = 3, ["LYD"] = 3, ["OMR"] = 3, ["TND"] = 3,
        ["CLF"] = 4, ["UYW"] = 4,
    };

    public static int MinorUnitsOf(string currency) => MinorUnits.TryGetValue(currency, out var digits) ? digits : 2;

    public static string Format(decimal amount, string currency)
    {
        var digits = MinorUnitsOf(currency);
        var rounded = Math.Round(amount, digits, MidpointRounding.AwayFromZero);
        return rounded.ToString("N" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture) + " " + currency;
    }
}
