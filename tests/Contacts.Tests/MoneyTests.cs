using Crm.Contacts.Features.Transactions;

namespace Crm.Contacts.Tests;

public sealed class MoneyTests
{
    [Theory]
    [InlineData("1016000.0000", "KRW", "1,016,000 KRW")]
    [InlineData("38700.4", "GBP", "38,700.40 GBP")]
    [InlineData("0.005", "USD", "0.01 USD")]
    [InlineData("-321.3996", "EUR", "-321.40 EUR")]
    [InlineData("12.3456", "KWD", "12.346 KWD")]
    [InlineData("1999.5", "JPY", "2,000 JPY")]
    public void Should_show_amounts_in_the_currencys_minor_units(string amount, string currency, string expected) =>
        Assert.Equal(expected, Money.Format(decimal.Parse(amount, System.Globalization.CultureInfo.InvariantCulture), currency));
}
